"""The experiment layer: run-directory names, sweeps on Optuna, comparison of runs and
optional tracking to MLflow. It drives :mod:`pyro_vae.runs`; nothing below it imports it."""
