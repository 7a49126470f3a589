"""What the RQ workers and the scheduler run."""
