"""Optimisation loops. :class:`~napari_dip.solvers.dip.DIPSolver` is the shared loop;
DeepRED extends it with its ADMM updates."""
