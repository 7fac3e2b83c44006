"""Analyses of trained adapters (the paper's geometric claims, measured): the distortion of each method's
parameter → update map (``update_map``), 2-D loss landscapes (``landscape``) and θ histograms, written as figures
with their data by ``python -m experiments.analysis`` (``make analysis``; docs/analysis.md)."""
