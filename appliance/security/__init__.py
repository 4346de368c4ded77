"""The appliance's certificate authority and the names its server certificate carries."""
