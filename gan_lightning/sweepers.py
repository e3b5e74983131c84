"""Hydra's Optuna sweeper, resumable (``sweep=optuna_triple_gan ... resume=true``) and pruning bad trials.

A study kept in a storage (``hydra.sweeper.storage=sqlite:///optuna.db``) and run again with ``resume=true``:
- its finished trials count towards ``n_trials`` (a 20-trial study stopped after 12 runs 8 more, not 20);
- a trial left running by the interruption is marked failed and its parameters are asked again first, so its job
  (whose directory is named after its parameters, ``hydra.sweep.subdir``) continues from its ``last.ckpt``;
- a job that finished in its directory is not trained again (``task=train`` returns its stored value).
Without a storage the sampler's seed proposes the same parameters in the same order, so finished jobs are skipped
the same way and the in-memory study is rebuilt from their stored values.

Pruning (``callbacks.optuna_pruning``, ``gan_lightning.callbacks.OptunaPruning``): every job is told its trial's number
(``pruning.trial``, with ``pruning.storage`` and ``pruning.study``); each epoch's validation metric is reported to the
trial through the study's storage, and a trial the pruner stops ends cleanly (its checkpoint written, ``result.json``
saying so) and is told to the study as pruned.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def _resuming(arguments: list[str]) -> bool:
    return any(a.replace(" ", "").lower() in ("resume=true", "resume=1", "+resume=true") for a in arguments)


def continue_study(impl: Any) -> None:
    """Before a resumed sweep: count the stored study's finished trials, and ask its interrupted ones again first."""
    import optuna

    try:
        study = optuna.load_study(study_name=impl.study_name, storage=impl.storage)
    except KeyError:  # no such study yet: a first run
        return
    done = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    interrupted = [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    for trial in interrupted:  # asked again first: the same parameters, the same job directory, its last.ckpt
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        study.enqueue_trial(trial.params)
    impl.n_trials = max(0, impl.n_trials - len(done))
    log.info(
        f"resume=true: study {impl.study_name} holds {len(done)} finished trials; {len(interrupted)} interrupted "
        f"asked again; {impl.n_trials} to run"
    )


def install() -> None:
    """Make Hydra's Optuna sweeper resumable (once per process; nothing when the plugin is not installed). Hydra takes
    sweepers only from its ``hydra_plugins`` namespace, so the step is added to the installed plugin's ``sweep``."""
    try:
        from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl
    except ImportError:
        return
    if getattr(OptunaSweeperImpl.sweep, "resumable", False):
        return
    original = OptunaSweeperImpl.sweep

    original_configure = OptunaSweeperImpl._configure_trials

    def sweep(self: Any, arguments: list[str]) -> Any:
        if _resuming(arguments) and self.storage is not None:
            continue_study(self)
        import optuna

        tell = optuna.study.Study.tell
        # the jobs write "pruned_at_epoch" through storages of their own: read it from the database, past this
        # process's cached copy of the study
        fresh = optuna.storages.RDBStorage(self.storage) if isinstance(self.storage, str) else None

        def tell_pruned(study: Any, trial: Any, values: Any = None, state: Any = None, **kwargs: Any) -> Any:
            number = trial if isinstance(trial, int) else trial.number
            attrs = {}
            if fresh is not None:
                trial_id = fresh.get_trial_id_from_study_id_trial_number(
                    fresh.get_study_id_from_name(study.study_name), number
                )
                attrs = fresh.get_trial_user_attrs(trial_id)
            if "pruned_at_epoch" in attrs and state in (None, optuna.trial.TrialState.COMPLETE):
                return tell(study, trial, state=optuna.trial.TrialState.PRUNED, **kwargs)
            return tell(study, trial, values=values, state=state, **kwargs)

        optuna.study.Study.tell = tell_pruned  # type: ignore[method-assign,assignment]
        try:
            return original(self, arguments)
        finally:
            optuna.study.Study.tell = tell  # type: ignore[method-assign]

    def configure(self: Any, trials: list, *args: Any, **kwargs: Any) -> Any:
        overrides = original_configure(self, trials, *args, **kwargs)
        # the job's trial and where it is kept, for pruning (gan_lightning.callbacks.OptunaPruning)
        where = [f"++pruning.storage={self.storage}", f"++pruning.study={self.study_name}"] if self.storage else []
        return [[*o, f"++pruning.trial={t.number}", *where] for o, t in zip(overrides, trials)]

    sweep.resumable = True  # type: ignore[attr-defined]
    OptunaSweeperImpl.sweep = sweep  # type: ignore[method-assign]
    OptunaSweeperImpl._configure_trials = configure  # type: ignore[method-assign]
