"""The study harness: a study or search is declared, resolved against its command line, run by Ray Tune, tracked
and tabled. Its modules import only downwards, in this order:

* :mod:`~srdc.harness.declarations` -- what a study script declares: :class:`Study`, :class:`SmokeTest`,
  :class:`Search` and the task settings several studies share;
* :mod:`~srdc.harness.ray_compat` -- every workaround for the Ray the project pins (private Ray APIs, settings only
  that Ray needs), and the pin they were written for;
* :mod:`~srdc.harness.costs` -- the per-epoch cost table ``--dry-run`` plans with (``epoch_costs.json``);
* :mod:`~srdc.harness.estimate` -- a run's and a trial's seconds from that table (the iterations the trainer draws);
* :mod:`~srdc.harness.options` -- every command-line option, ``--set``, the launch file, and the one resolved
  :class:`~srdc.harness.options.Launch` (every path, URI and resource of a run);
* :mod:`~srdc.harness.trainable` -- THE Ray Tune trainable: N runs trained in lockstep (a plain study's trial is
  N=1, a search trial runs every task x seed);
* :mod:`~srdc.harness.plan` -- a study resolved into Tune's param space, checked before launch;
* :mod:`~srdc.harness.console` -- a study's compact console: a line per trial event, a summary line every 30 s;
* :mod:`~srdc.harness.tuner` -- the only place that builds a Tuner (RunConfig, resources, callbacks, restore, the
  Ray session), and each trial's :class:`~srdc.base.TrialStatus` from Tune's state;
* :mod:`~srdc.harness.outcome` -- running a study, its tables and closing lines;
* :mod:`~srdc.harness.search_setup` -- a search resolved against its launch, and its one list of phases (run and
  planned alike);
* :mod:`~srdc.harness.search_report` -- what a search ends with, and its printed report;
* :mod:`~srdc.harness.search_files` -- a search's files (the Optuna study's export, the accuracy chart, the report)
  in its folder and on its MLflow parent run;
* :mod:`~srdc.harness.search` -- running a search's phases: Optuna TPE + ASHA, the features tier, promotion, the
  winner's re-run;
* :mod:`~srdc.harness.dryrun` -- ``--dry-run``: the cluster, the trials, trials at once, wall time and GPU-hours,
  nothing run;
* :mod:`~srdc.harness.main` -- the one entry point of every ``studies/*.py`` script.

This file imports nothing, so that a Ray worker unpickling the trainable loads only what a trial needs.
"""
