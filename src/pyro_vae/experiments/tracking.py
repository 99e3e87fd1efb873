"""Optional experiment tracking to MLflow (``--mlflow true``).

One training run is one MLflow run: its configuration as params, every epoch's row of
``metrics.csv`` as metrics at step = epoch, the summary's numbers as final metrics
(``final.test_elbo``...), and its figures, ``summary.json``, ``metrics.csv`` and
``config.toml`` as artifacts. The store is ``MLFLOW_TRACKING_URI`` when set, else a local
SQLite file ``./mlflow.db`` (MLflow 3 refuses its old ``./mlruns`` folder store by default;
``mlflow ui --backend-store-uri sqlite:///mlflow.db`` shows the runs). The MLflow run's id and
store are kept in ``RUN_DIR/mlflow.json`` so that ``--resume`` continues the same MLflow run, in
the same store wherever it is resumed from. MLflow is an extra, never required:
``pip install 'pyro-vae[mlflow]'``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from pyro_vae.config import Config
from pyro_vae.errors import ConfigError

RUN_ID_FILE = "mlflow.json"
EXPERIMENT = "pyro-vae"
#: summary.json's words about its numbers, logged as ``final.*`` tags beside the ``final.*``
#: metrics: without them ``final.test_elbo`` of a Bernoulli run (a mass on binary data) and of
#: a Gaussian one (a density) sit side by side in MLflow as one kind of number.
DESCRIBING = ("kind", "quantity", "unit", "selection", "train_objective_name")


def tracking_uri(run_dir: Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI``; else the store ``run_dir``'s MLflow run began in, as its
    ``mlflow.json`` records it (``./mlflow.db`` of a resume from another working directory would
    be another store, which lacks that run); else a SQLite file ``mlflow.db`` in the working
    directory."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    id_file = Path(run_dir) / RUN_ID_FILE if run_dir is not None else None
    if id_file is not None and id_file.is_file():
        try:
            recorded = json.loads(id_file.read_text()).get("tracking_uri")
        except (OSError, ValueError, AttributeError):
            recorded = None
        if recorded:
            return recorded
    return f"sqlite:///{Path('mlflow.db').resolve()}"


def check_mlflow(run_dir: Path | None = None) -> None:
    """Refuse ``--mlflow true`` where MLflow is not installed (a sweep checks it before its
    directory is made: each trial would fail on it, and the directory would hold the option).
    ``run_dir``: a run resumed with the setting from its own config.toml, named as the cause
    (its user gave no --mlflow), with the way to go on without it."""
    try:
        import mlflow.tracking  # noqa: F401
    except ImportError:
        from pyro_vae.runs import CONFIG, read_run_config

        own = run_dir is not None and (Path(run_dir) / CONFIG).is_file() and read_run_config(run_dir).train.mlflow
        install = "pip install 'pyro-vae[mlflow]' (or mlflow-skinny)"
        if own:
            raise ConfigError(f"{run_dir} logs to MLflow (mlflow = true in its {CONFIG}), but MLflow is not installed: "
                              f"{install}, or resume it with --mlflow false.") from None
        raise ConfigError(f"--mlflow true needs MLflow: {install}.") from None


def mlflow_client(run_dir: Path | None = None):
    """An ``MlflowClient`` on :func:`tracking_uri` of ``run_dir`` (see also :func:`check_mlflow`)."""
    check_mlflow(run_dir)
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri(run_dir))


def flat_params(config: Config) -> dict[str, str]:
    """The configuration as MLflow params: ``section.key`` -> text."""
    return {f"{section}.{key}": ",".join(map(str, value)) if isinstance(value, list) else str(value)
            for section, table in config.to_dict().items() for key, value in table.items()}


class MLflowTracker:
    """Logs one run through ``client`` (an ``MlflowClient`` or any object with its
    ``create_run``, ``log_param``, ``log_metric``, ``log_artifact``, ``set_terminated``)."""

    def __init__(self, client, run_id: str, run_dir: Path, continued: bool = False):
        self.client, self.run_id, self.run_dir = client, run_id, Path(run_dir)
        #: whether this continues the run's MLflow run (``mlflow.json``), which holds its earlier
        #: epochs; a new MLflow run of a resumed run is given them by :meth:`log_history`
        self.continued = continued

    @classmethod
    def start(cls, run_dir: Path, config: Config, client=None, experiment: str = EXPERIMENT) -> MLflowTracker:
        """Open the MLflow run of ``run_dir`` (the same one again on resume) and log its params."""
        run_dir = Path(run_dir)
        try:
            return cls._start(run_dir, config, client if client is not None else mlflow_client(run_dir), experiment)
        except ConfigError:
            raise
        except Exception as err:  # noqa: BLE001 - MLflow raises its own kinds for a bad store
            raise ConfigError(f"MLflow cannot use its store {tracking_uri(run_dir)} ({str(err).splitlines()[0][:160]}); "
                              "set MLFLOW_TRACKING_URI to a store it accepts (e.g. sqlite:///mlflow.db).") from None

    @classmethod
    def _start(cls, run_dir: Path, config: Config, client, experiment: str) -> MLflowTracker:
        id_file = run_dir / RUN_ID_FILE
        if id_file.is_file():
            run_id = json.loads(id_file.read_text())["run_id"]
            try:
                client.update_run(run_id, status="RUNNING")
            except Exception as err:  # noqa: BLE001 - MLflow's own kind for a run its store lacks
                raise ConfigError(f"{run_dir}'s MLflow run {run_id} is not in the store {tracking_uri(run_dir)} "
                                  f"({str(err).splitlines()[0][:160]}); set MLFLOW_TRACKING_URI to the store it "
                                  "began in, or resume with --mlflow false.") from None
            cls._log_resumed_params(client, run_id, config)
            return cls(client, run_id, run_dir, continued=True)
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found is not None else client.create_experiment(experiment)
        run = client.create_run(experiment_id, run_name=run_dir.name, tags={"pyro_vae.run_dir": str(run_dir.resolve())})
        tracker = cls(client, run.info.run_id, run_dir)
        for key, value in flat_params(config).items():
            client.log_param(tracker.run_id, key, value)
        run_dir.mkdir(parents=True, exist_ok=True)
        from pyro_vae.inference.checkpoint import atomic_write_text

        atomic_write_text(id_file, json.dumps({"run_id": tracker.run_id, "experiment_id": experiment_id,
                                               "tracking_uri": tracking_uri()}) + "\n")
        return tracker

    @staticmethod
    def _log_resumed_params(client, run_id: str, config: Config) -> None:
        """A resumed run's settings where they differ from those logged at its start (``--epochs``
        raised, say): MLflow refuses to change a param, so a tag of the same name holds the value
        now in effect (and ``pyro_vae.resumed_with`` says what changed); a param the run never
        logged is logged."""
        logged = client.get_run(run_id).data.params
        changes = []
        for key, value in flat_params(config).items():
            if key not in logged:
                client.log_param(run_id, key, value)
            elif logged[key] != value:
                client.set_tag(run_id, key, value)
                changes.append(f"{key}: {logged[key]} -> {value}")
        if changes:
            client.set_tag(run_id, "pyro_vae.resumed_with", "; ".join(changes))

    def log_history(self, history: list[dict]) -> None:
        """The epochs a resumed run trained before this MLflow run began (``--mlflow true``
        turned on at ``--resume``), so that its curves start at epoch 1; where the MLflow run is
        the run's own from its start, which logged them as they came, those it lacks: an epoch
        whose checkpoint was written before a kill stopped its logging."""
        if not history:
            return
        logged = set()
        if self.continued:
            key = next(key for key in history[0] if key != "epoch")  # log_epoch logs every one at each epoch
            logged = {metric.step for metric in self.client.get_metric_history(self.run_id, key)}
        for row in history:
            if int(row["epoch"]) not in logged:
                self.log_epoch(row)

    def log_epoch(self, row: dict) -> None:
        """One row of ``metrics.csv`` (nats per example, seconds) at step = its epoch."""
        for key, value in row.items():
            if key != "epoch":
                self.client.log_metric(self.run_id, key, float(value), step=int(row["epoch"]))

    def finish(self, summary: dict, figures: list[Path]) -> None:
        """The summary's numbers as ``final.*`` metrics, with the words that say what they are
        as ``final.*`` tags (:data:`DESCRIBING`), the run's files as artifacts, and the end."""
        settings = {"seed", "beta", "k", "latent_dim", "train_limit", "max_epochs", "patience", "processes"}
        for key, value in summary.items():
            if key not in settings and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                self.client.log_metric(self.run_id, f"final.{key}", float(value))
            elif key in DESCRIBING and isinstance(value, str):
                self.client.set_tag(self.run_id, f"final.{key}", value)
        files = [Path(f) for f in figures] + [self.run_dir / name
                                              for name in ("summary.json", "metrics.csv", "config.toml")]
        for path in files:
            if path.is_file():
                self.client.log_artifact(self.run_id, str(path))
        self.end("FINISHED")

    def end(self, status: str) -> None:
        """Mark the MLflow run FINISHED, FAILED or KILLED."""
        self.client.set_terminated(self.run_id, status=status)
