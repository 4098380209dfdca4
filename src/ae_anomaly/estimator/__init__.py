"""What every fitted model of the package shares: the estimator base and its saved files."""
