"""An independent float64 NumPy implementation of LRP and the tests that hold jaxlrp to it."""
