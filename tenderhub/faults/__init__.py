"""`tenderhub faults`: the whole pipeline under load and random faults (or a steady soak), then a quiescence audit."""
