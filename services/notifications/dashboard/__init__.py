"""The coordinators' dashboard: server-rendered pages, an app of its own (app.py) mounted at
/dashboard on the notifications API; one page module per area (pages/)."""
