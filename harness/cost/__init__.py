"""What requests cost before and after they are sent: token estimates, the price table, `estimate`."""
