"""Getting committed jobs to a worker: the one send path, which jobs fuse, and the cost model."""
