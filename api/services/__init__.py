"""Application services: the API's operations that span the catalog and Temporal, each with
one path (check and prepare, commit the record, start or signal the workflow, settle), so
routes only parse, call and present."""
