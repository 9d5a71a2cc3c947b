"""The entity write pipeline: the change type every write produces and the stages that follow it."""
