"""Report specs (`bench list reports`, `bench report NAME`); a package so installs ship them."""
