"""Adaptive search, side by side in one run: trainq's search sweeps against Optuna and Ray Tune.

    python -m bench.bench_search [--size default|small|both] [--seeds 10] [--trials 100]
                                 [--report-every 10] [--contenders trainq-tpe-asha,...]
                                 [--json PATH] [--no-record]

One space (optimizer x init x log-uniform lr in [1e-7, 1e-1], stage optim, 500 iterations, one
data seed) at the default size and at D_in = H = 32. The reference is the best final loss of a
dense grid over it (13 log-spaced lr x 4 optimizers x 3 inits = 156 jobs), trained once as a
grid sweep through the embedded service. Every contender trains with trainq's own training
function (worker.training.train with a LossBuffer that reports to the tuner every
--report-every steps), with the same trial budget and 2 trials at a time, so only search and
scheduling differ. Contenders run one after another for each search seed, in an order rotated
by seed, so their wall times are measured side by side under the same load. One contender is
not in the default list: `trainq-tpe-asha-wide` keeps 16 trials in flight on the same two
worker processes, so that `fused: auto` may stack them and freed rows refill.

Pruning regret is exact: after the timed part, every pruned configuration is trained to its
end offline (train_to_list; trainq random + asha's are read from trainq random without
stopping, which asks the same trials for the same seed) and counted if it would have finished
within 1% of the reference.

The modules, in the order a run uses them: `space` (the space, the budget, the contenders),
`objective` (the training every contender runs), `trainq`, `optuna_tpe` and `ray_tune` (one
search each), `scoring` (the figures), `table` (a size's table) and `run` (the command: its
arguments and every size).
"""
