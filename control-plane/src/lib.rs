//! Control plane: object model, API server, scheduler, controllers and client (issue 5 on).
