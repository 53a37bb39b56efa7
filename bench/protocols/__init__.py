"""Protocol YAML files (`bench list protocols`); a package so installs ship them."""
