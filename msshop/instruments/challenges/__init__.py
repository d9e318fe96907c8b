"""`msshop challenge`: the ladder of challenges a learner climbs by building Service D,
each graded in a sandbox of its own with findings a learner can act on."""
