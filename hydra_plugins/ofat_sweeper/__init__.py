"""One-factor-at-a-time sweeper: the PrCRS paper's tuning method as a Hydra Sweeper plugin."""
