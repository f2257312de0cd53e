"""The activity classes of the synthetic egomotion dataset and their text descriptions."""

CLASS_NAMES: tuple[str, ...] = (
        "walk",
        "run",
        "stand",
        "turn_left",
        "turn_right",
        "stairs_up",
        "stairs_down",
        "sit_down",
)

CLASS_DESCRIPTIONS: dict[str, str] = {
        "walk": "a person walking forward at a steady pace",
        "run": "a person running forward",
        "stand": "a person standing still and looking around calmly",
        "turn_left": "a person turning on the spot to the left",
        "turn_right": "a person turning on the spot to the right",
        "stairs_up": "a person walking up a flight of stairs",
        "stairs_down": "a person walking down a flight of stairs",
        "sit_down": "a person sitting down from a standing position",
}
