"""The rule engine, as data: what a rule is, and how a rule set becomes the
tables the program searches.

Owns: a rule and its matches (model), building the tables (tables), the
engine's maps and the generation flip (engine), xdpctl.toml (config_file),
what apply would change (plan), synthetic rule sets for bench (synthetic).
May use: xdpctl.datapath, xdpctl.kernel, and the top-level modules.
"""
