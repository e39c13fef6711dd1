"""Loss and balancing functions of jaxssl (public contract: shared/API.md).

Re-exports are added as each family lands; import the family modules directly meanwhile.
"""
