import streamlit as st

st.title("directions")
st.info("Coming soon.")
