"""Paper tables from run records: cells, published-vs-ours tables, claims, figures, the ablation table (`make tables`)."""
