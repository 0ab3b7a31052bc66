"""The operator on a cluster: kopf registrations, one controller loop per Society, the API
client, leader election and metrics. `society operator` starts it (`handlers.run`)."""
