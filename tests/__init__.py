"""Test suite (a regular package, so that ``tests.*`` resolves here and not to a ``tests``
package some dependency installs, such as the optimade wheel's)."""
