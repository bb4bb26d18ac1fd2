"""Training on several devices and hosts: the device plan (`plan`) and the
batches and predictions it shards (`sharding`). See `flowerkit.distribute.plan`."""
