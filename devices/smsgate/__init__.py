"""The SMSGate Android app's private-server protocol: stock phones join a list with a URL and a token."""
