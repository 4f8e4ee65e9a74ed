"""`scaling launch`: the extrapolated final run, sized from a fitted law, its loss predicted and registered
before it trains.

request (what was asked) -> sizing (N, D and the run, from the law and the sweep's grid) -> planning (the
planner's figures, printed) -> confirm (ask before an expensive run) -> prediction (OUT/prediction.json,
written once) -> executors (local worker, SLURM, torchrun; `rank` is one torchrun process). `orchestrate`
runs those steps in order. Kept light: the CLI imports `request` for its defaults on every command.
"""
