"""Stage 3a, smears: whole smear images into red cells, white cells and platelets (:mod:`.smear`), scored against
boxes and masks (:mod:`.scoring`), run over many files with resumable outputs (:mod:`.batch`)."""

#: Diameter of a normal red cell in micrometres, for ``--pixel-size`` (here, not in :mod:`.scale`, so the CLI's help
#: reads it without loading NumPy).
RBC_DIAMETER_UM = 7.5
