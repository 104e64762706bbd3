"""The model a run trains: base loading (``load``), what trains per method (``methods``),
reading a trained run back (``trained``) and merging an adapter into its base (``merge``).
"""
