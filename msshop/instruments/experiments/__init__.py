"""`msshop experiment`: a workload under a nemesis, a checker and a verdict (run.py)."""
