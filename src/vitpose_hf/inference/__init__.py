"""Running a finished model over many images or a whole dataset, on one process or under `accelerate launch`
(any number of processes, GPUs or machines): `sharded` splits `vitpose-hf predict`, `evaluate` is
`vitpose-hf evaluate`."""
