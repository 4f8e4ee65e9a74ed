"""Fitting scaling laws to runs: Chinchilla Approach 3, variable projection, isoFLOP, envelope, Kaplan forms.

numpy/scipy only. The estimators live in `estimators`, the Approach 3 numerics in `chinchilla`, the bootstrap,
warnings and backtest in `fitting`, the run table in `data`. Every fit returns `scaling.law.FittedLaw`.
"""

# The form names, here so that the CLI can list them without importing numpy, scipy or pandas.
FORMS = ("chinchilla", "vpnls", "isoflop", "envelope", "kaplan")
