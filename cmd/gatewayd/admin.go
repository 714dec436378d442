package main

import "net/http"

// mountAdmin adds the operator endpoints of later features (greylist) to the
// loopback HTTP listener.
func mountAdmin(mux *http.ServeMux) {}
