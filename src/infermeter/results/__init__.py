"""Result rows, their writers and the run's environment fingerprint."""
