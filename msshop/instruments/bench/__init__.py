"""`msshop bench`: a throw-away sandbox measured in one run, and its load generator."""
