"""What a run is, as declared: protocol YAML (validated, with its identity for result keys), grids
of protocols, method recipes per protocol family, image-transform options, and the catalog of
shipped files.  Imports bench.core only, and never torch."""
