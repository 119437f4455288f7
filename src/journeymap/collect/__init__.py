"""Collection: Segment / RudderStack / PostHog messages → inbox → profiles and the lake."""
