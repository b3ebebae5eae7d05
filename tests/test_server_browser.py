"""The web chat page at / in a real headless browser: Debian's chromium and chromedriver (scripts/setup.sh
installs them) driven by selenium, against a live llamapy-server on the default model."""
from __future__ import annotations

import shutil

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from test_server import start_server, stop_server

API_KEY = "browser-key"


@pytest.fixture(scope="module")
def page_server():
    proc, url = start_server("-np", "1", "-c", "1024", "-n", "24", "--api-key", API_KEY)
    yield url
    stop_server(proc)


@pytest.fixture(scope="module")
def browser():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "chromium and chromedriver are needed (apt-get install chromium chromium-driver)"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    b = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    yield b
    b.quit()


def test_chat_page_streams_a_reply(page_server, browser):
    browser.get(page_server + "/")
    assert browser.title == "llamapy chat"
    browser.find_element(By.ID, "apikey").send_keys(API_KEY)
    box = browser.find_element(By.ID, "input")
    box.send_keys("What is the capital of France?")
    box.send_keys(Keys.ENTER)
    wait = WebDriverWait(browser, 60, poll_frequency=0.05)
    reply = wait.until(lambda b: b.find_element(By.CSS_SELECTOR, ".msg.assistant, .msg.error"))
    # the reply grows while the stream arrives, then is marked done
    partial = wait.until(lambda b: reply.text or None)
    wait.until(lambda b: reply.get_attribute("data-done") == "1")
    final = reply.text
    assert "error" not in reply.get_attribute("class")
    assert final.startswith(partial) and final.strip()    # sampled at the server's default temperature
    assert browser.find_element(By.CSS_SELECTOR, ".msg.user").text == "What is the capital of France?"
    # a second turn sends the whole conversation and gets its own reply
    box.send_keys("Thanks!" + Keys.ENTER)
    wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, ".msg.assistant[data-done='1']")) == 2)


def test_chat_page_shows_an_error_without_the_key(page_server, browser):
    browser.get(page_server + "/")
    browser.execute_script("localStorage.clear()")
    browser.get(page_server + "/")
    box = browser.find_element(By.ID, "input")
    box.send_keys("Hello" + Keys.ENTER)
    error = WebDriverWait(browser, 30).until(lambda b: b.find_element(By.CSS_SELECTOR, ".msg.error"))
    assert "Invalid API Key" in error.text
