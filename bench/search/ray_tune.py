"""Ray Tune: ASHA over random search, reuse_actors=True, on a local 2-CPU cluster."""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.embedded import pythonpath
from bench.search.objective import job_fields, train_reporting
from bench.search.scoring import Run, Trial
from bench.search.space import GRACE, INITS, ITERATIONS, LR_RANGE, OPTIMIZERS, PARALLEL, REDUCTION


def _ray_trainable(config: dict[str, Any]) -> None:
    """A Ray Tune function trainable: trainq's training, reporting every config['every'] steps."""
    import torch
    from ray import tune

    torch.set_num_threads(1)
    params = {name: config[name] for name in ("optimizer", "init", "lr")}

    def report(steps: int, loss: float) -> bool:
        tune.report({"loss": loss, "step": steps, "now": time.time(), "diverged": False})
        return True  # Ray stops a trial itself, at a report

    fields = job_fields(config["dims"], params)
    steps, _, diverged = train_reporting(fields, config["every"], report)
    if diverged:
        tune.report({"loss": math.inf, "step": steps, "now": time.time(), "diverged": True})


class RayTune:
    """A local Ray cluster with 2 CPUs, started once and shared by every Ray run."""

    def __init__(self) -> None:
        try:
            import ray
        except ImportError as error:
            raise RuntimeError(
                "Ray Tune is not installed: pip install -e '.[bench]' (ray[tune]==2.60.0)"
            ) from error
        self.storage = Path(tempfile.mkdtemp(prefix="bench-ray-"))
        ray.init(
            num_cpus=PARALLEL,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            # The trainable is this module's: Ray's workers import it from the repository.
            runtime_env={"env_vars": {"PYTHONPATH": pythonpath()}},
        )

    def search(self, dims: dict[str, int], seed: int, n: int, every: int) -> Run:
        """One ASHA search of n random trials, 2 at a time."""
        from ray import tune
        from ray.tune.schedulers import ASHAScheduler
        from ray.tune.search.basic_variant import BasicVariantGenerator

        scheduler = ASHAScheduler(
            time_attr="step",
            max_t=ITERATIONS,
            grace_period=GRACE,
            reduction_factor=REDUCTION,
        )
        tuner = tune.Tuner(
            tune.with_resources(_ray_trainable, {"cpu": 1}),
            param_space={
                "optimizer": tune.choice(list(OPTIMIZERS)),
                "init": tune.choice(list(INITS)),
                "lr": tune.loguniform(*LR_RANGE),
                "dims": dims,
                "every": every,
            },
            tune_config=tune.TuneConfig(
                metric="loss",
                mode="min",
                scheduler=scheduler,
                search_alg=BasicVariantGenerator(random_state=seed, max_concurrent=PARALLEL),
                num_samples=n,
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=f"bench-{seed}-{time.time_ns()}", storage_path=str(self.storage), verbose=0
            ),
        )
        start_clock, start = time.time(), time.perf_counter()
        results = tuner.fit()
        wall = time.perf_counter() - start
        trials = []
        for result in results:
            metrics = result.metrics or {}
            if "step" not in metrics:
                continue  # errored before its first report
            steps = int(metrics["step"])
            status = "finished" if steps == ITERATIONS else "pruned"
            if metrics.get("diverged"):
                status = "diverged"
            trials.append(
                Trial(
                    end=float(metrics["now"]) - start_clock,
                    steps=steps,
                    status=status,
                    loss=float(metrics["loss"]) if status == "finished" else None,
                    params={k: result.config[k] for k in ("optimizer", "init", "lr")},
                )
            )
        return Run("ray-random-asha", seed, trials, wall, {"errors": len(results.errors)})

    def close(self) -> None:
        """Stop the cluster."""
        import ray

        ray.shutdown()
