// LocalGroup: not written yet.
