"""Analysis of models and runs: parameter sensitivity, downstream evaluation, scaling-law fits."""
