"""The load benchmark and its soak run (issue 9): `python -m bench load`, `python -m bench soak`."""
