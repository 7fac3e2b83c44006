"""The CPU-scale study (`make reproduce-mini`, docs/mini.md): its driver, verdict rules, report, README summary, demo and the paper-shape follow-up."""
