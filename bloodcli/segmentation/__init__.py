"""Stage 3a, smears: whole smear images into red cells, white cells and platelets (:mod:`.smear`), scored against
boxes and masks (:mod:`.scoring`), run over many files with resumable outputs (:mod:`.batch`)."""
