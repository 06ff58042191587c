"""Evidence for assessors: the pytest plugin (--evidence-out), the signed bundle, OSCAL, verification."""
