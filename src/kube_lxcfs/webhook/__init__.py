"""The mutating admission webhook: pure AdmissionReview → JSON patch, and its HTTPS server."""
