"""Services: what each Lambda runs. No service imports another."""
