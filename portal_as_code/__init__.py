"""The portal's configuration as YAML documents in git: load, plan, apply, export, revisions."""
