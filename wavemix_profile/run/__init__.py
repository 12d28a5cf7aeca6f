"""Run: measurements in processes of their own.

Isolation (a fresh child per model), the fork server and the worker it forks, the protocol's pipes,
timed blocks run alone, lanes and the runner, one process per device, Ray, process trees, host cores.
May import: measure, estimate, sources, store, core, the zoo, and run.
"""
