"""A message's jobs, attempted: planned into stacks, claimed, trained, recorded and finished.

`stacks` runs a message (`planning` decides which jobs train together, `drivers` calls the
training functions, `refill` fills the rows jobs leave, `outcomes` writes each job's end);
`training_record` is the fenced, soft-limited writer a training records through, and `claims`
and `record` are the database side of an attempt.
"""
