"""The catalogue of classic mistakes: numeric signatures that name what a failing row looks like."""
