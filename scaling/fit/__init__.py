"""Fitting scaling laws to runs: Chinchilla Approach 3, variable projection, isoFLOP, envelope, Kaplan forms.

numpy/scipy only. The estimators live in `estimators`, the Approach 3 numerics in `chinchilla`, the bootstrap,
warnings and backtest in `fitting`, the run table in `data`. Every fit returns `scaling.law.FittedLaw`.
"""

# The form names, here so that the CLI can list them without importing numpy, scipy or pandas.
FORMS = ("chinchilla", "vpnls", "isoflop", "envelope", "kaplan")
# How a law counts N: every parameter (Pearce & Song 2024), Kaplan et al.'s non-embedding count, or that plus
# the output head's V x d matrix (Porian et al. 2024): the parameters a token's forward pass multiplies by.
PARAM_CONVENTIONS = ("total", "non_embedding", "non_embedding_with_head")
